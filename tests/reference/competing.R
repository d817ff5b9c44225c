# Reference fixtures for hipfrac.competing (Aalen-Johansen CIF and Fine-Gray regression).
# Re-run from the project root:  Rscript tests/reference/competing.R
# Writes tests/reference/fixtures/competing_*.csv. Needs R packages survival and cmprsk.
#
# Data: survival::mgus2 (Kyle et al., NEJM 2002; 1384 patients with MGUS), the standard competing-risk
# example of the survival package vignette: time to progression to plasma cell malignancy (PCM),
# with death before progression as the competing event. Times are months (many ties).
suppressPackageStartupMessages({library(survival); library(cmprsk)})
out <- "tests/reference/fixtures"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

d <- survival::mgus2
d$etime <- ifelse(d$pstat == 0, d$futime, d$ptime)
d$event <- ifelse(d$pstat == 0, 2 * d$death, 1)     # 0 censored, 1 progression, 2 death
d$male <- as.integer(d$sex == "M")
dat <- d[, c("id", "etime", "event", "age", "male", "hgb", "creat", "mspike")]
write.csv(dat, file.path(out, "competing_mgus2.csv"), row.names = FALSE, na = "")

# --- Fine-Gray: crr drops rows with missing covariates (na.omit), as R does ---------------------
fg_rows <- list()
fits <- list(
  list(name = "pcm_age_male_hgb", failcode = 1, covs = c("age", "male", "hgb")),
  list(name = "death_age_male_hgb", failcode = 2, covs = c("age", "male", "hgb")),
  list(name = "pcm_age_male_creat_mspike", failcode = 1, covs = c("age", "male", "creat", "mspike"))
)
for (f in fits) {
  cc <- dat[complete.cases(dat[, c("etime", "event", f$covs)]), ]
  m <- crr(cc$etime, cc$event, as.matrix(cc[, f$covs]), failcode = f$failcode, cencode = 0,
           gtol = 1e-8, maxiter = 100)
  stopifnot(m$converged)
  fg_rows[[f$name]] <- data.frame(model = f$name, cause = f$failcode, n = m$n, term = f$covs,
                                  coef = unname(m$coef), se = sqrt(diag(m$var)),
                                  loglik = m$loglik, loglik_null = m$loglik.null)
}
write.csv(do.call(rbind, fg_rows), file.path(out, "competing_crr.csv"), row.names = FALSE)

# --- cumulative incidence (Aalen-Johansen) and Gray's variance --------------------------------
ci <- cuminc(dat$etime, dat$event, group = ifelse(dat$male == 1, "male", "female"), cencode = 0)
tp <- c(0.5, 12, 60, 120, 240, 360, 420)
tpo <- timepoints(ci, tp)
rows <- list()
for (nm in rownames(tpo$est)) {
  parts <- strsplit(nm, " ")[[1]]
  rows[[nm]] <- data.frame(group = parts[1], cause = as.integer(parts[2]), time = tp,
                           cif = tpo$est[nm, ], var = tpo$var[nm, ])
}
write.csv(do.call(rbind, rows), file.path(out, "competing_cuminc.csv"), row.names = FALSE, na = "")
# the whole step function of one curve (every corner), ungrouped, cause 1
ci1 <- cuminc(dat$etime, dat$event, cencode = 0)
s <- ci1[["1 1"]]
write.csv(data.frame(time = s$time, cif = s$est, var = s$var),
          file.path(out, "competing_cuminc_steps.csv"), row.names = FALSE)
# Gray's test by sex (for information)
print(ci$Tests)
cat("wrote competing fixtures\n")
