# Reference results for hipfrac.prevention's time-dependent treatment analysis.
#
# Data: the Stanford heart transplant data shipped with R's survival package (`jasa`), where heart
# transplant is the classic time-dependent exposure. Each patient enters at acceptance (time 0), may
# receive a transplant at `wait.time` and is followed to death or censoring at `futime`. We use the
# same conventions as survival's derived `heart` data set: one day is added to futime and wait.time
# so that nobody has zero follow-up (stop = futime + 1, transplant from wait.time + 1).
#
# Writes into tests/reference/fixtures/:
#   prevention_heart_persons.csv  one row per patient: id, time, event, exposure_time (NA = never),
#                                 age (years - 48), year (years since 1 Oct 1967), surgery
#   prevention_heart_split.csv    survival::tmerge episode split at the exposure: (start, stop] rows
#   prevention_heart_coxph.json   coxph(Surv(start, stop, event) ~ age + year + surgery + transplant)
#                                 with Efron and Breslow ties: coef, se, loglik, n, nevent
# Re-run from the project root:  Rscript tests/reference/prevention.R
suppressPackageStartupMessages(library(survival))
out <- "tests/reference/fixtures"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

j <- jasa
persons <- data.frame(
  id = seq_len(nrow(j)),
  time = j$futime + 1,
  event = j$fustat,
  exposure_time = ifelse(is.na(j$wait.time), NA, j$wait.time + 1),
  age = as.numeric(j$accept.dt - j$birth.dt) / 365.25 - 48,
  year = as.numeric(j$accept.dt - as.Date("1967-10-01")) / 365.25,
  surgery = j$surgery
)
# One patient is transplanted on the last day of follow-up (exposure_time > time): never exposed.
write.csv(persons, file.path(out, "prevention_heart_persons.csv"), row.names = FALSE, na = "")

base <- persons[, c("id", "time", "event", "age", "year", "surgery")]
split <- tmerge(base[, c("id", "age", "year", "surgery")], base, id = id,
                death = event(time, event))
split <- tmerge(split, persons, id = id, exposed = tdc(exposure_time))
split <- split[order(split$id, split$tstart), c("id", "tstart", "tstop", "death", "exposed",
                                                 "age", "year", "surgery")]
write.csv(split, file.path(out, "prevention_heart_split.csv"), row.names = FALSE)

fit_one <- function(ties) {
  f <- coxph(Surv(tstart, tstop, death) ~ age + year + surgery + exposed, data = split, ties = ties)
  list(ties = ties, terms = I(names(coef(f))), coef = I(unname(coef(f))), se = I(unname(sqrt(diag(vcov(f))))),
       loglik = unname(f$loglik[2]), loglik_null = unname(f$loglik[1]), n = f$n, nevent = f$nevent)
}
res <- list(source = "R survival::coxph on survival::jasa split with tmerge",
            r_version = R.version.string, survival_version = as.character(packageVersion("survival")),
            efron = fit_one("efron"), breslow = fit_one("breslow"))

to_json <- function(x, indent = "") {  # base R only (no jsonlite needed); I() marks an array
  if (is.list(x)) {
    inner <- paste0(indent, "  ")
    items <- vapply(names(x), function(k) paste0(inner, '"', k, '": ', to_json(x[[k]], inner)), "")
    return(paste0("{\n", paste(items, collapse = ",\n"), "\n", indent, "}"))
  }
  v <- if (is.character(x)) paste0('"', x, '"') else trimws(formatC(unclass(x), digits = 15, format = "g"))
  if (length(x) == 1 && !inherits(x, "AsIs")) v else paste0("[", paste(v, collapse = ", "), "]")
}
writeLines(to_json(res), file.path(out, "prevention_heart_coxph.json"))
print(summary(coxph(Surv(tstart, tstop, death) ~ age + year + surgery + exposed, data = split)))
