# Reference values for hipfrac.variation (tests/test_variation_reference.py reads the fixtures).
# Re-run from the project root with:  Rscript tests/reference/variation.R
# Needs R packages lme4 (random-intercept logit) and base stats (qbinom). Writes small CSV fixtures to
# tests/reference/fixtures/variation_*.csv.
suppressPackageStartupMessages(library(lme4))
out <- "tests/reference/fixtures"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
w <- function(df, name) write.csv(df, file.path(out, name), row.names = FALSE, quote = TRUE)

# --- 1. random-intercept logit on real data -----------------------------------------------------
# (a) lme4::cbpp (contagious bovine pleuropneumonia, 15 herds, 4 periods), expanded to one 0/1 row
#     per animal: incidence ~ period + (1 | herd).
expand_cbpp <- function() {
  rows <- lapply(seq_len(nrow(cbpp)), function(i) {
    r <- cbpp[i, ]
    data.frame(herd = as.character(r$herd), period = as.character(r$period),
               y = c(rep(1L, r$incidence), rep(0L, r$size - r$incidence)))
  })
  do.call(rbind, rows)
}
cb <- expand_cbpp()
w(cb, "variation_cbpp_rows.csv")
# (b) lme4::VerbAgg (verbal aggression questionnaire, 316 persons x 24 items), binary r2 ~ Anger +
#     Gender + btype + situ + (1 | id).
va <- data.frame(id = as.character(VerbAgg$id), y = as.integer(VerbAgg$r2 == "Y"), Anger = VerbAgg$Anger,
                 Gender = as.character(VerbAgg$Gender), btype = as.character(VerbAgg$btype),
                 situ = as.character(VerbAgg$situ))
w(va, "variation_verbagg_rows.csv")

fit_ref <- function(formula, data, dataset, nagq) {
  # factor levels sorted alphabetically: the first level is the reference, as in hipfrac
  f <- glmer(formula, data = data, family = binomial, nAGQ = nagq,
             control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
  s2 <- as.numeric(VarCorr(f)[[1]])
  fe <- fixef(f)
  se <- sqrt(diag(as.matrix(vcov(f))))
  re <- ranef(f, condVar = TRUE)[[1]]
  pv <- attr(re, "postVar")[1, 1, ]
  list(
    fixed = data.frame(dataset = dataset, nagq = nagq, term = names(fe), estimate = unname(fe), se = unname(se)),
    var = data.frame(dataset = dataset, nagq = nagq, sigma2 = s2, mor = exp(sqrt(2 * s2) * qnorm(0.75)),
                     loglik = as.numeric(logLik(f))),
    re = data.frame(dataset = dataset, nagq = nagq, group = rownames(re), effect = re[, 1], se = sqrt(pv))
  )
}
fits <- list(
  fit_ref(y ~ period + (1 | herd), cb, "cbpp", 1),
  fit_ref(y ~ period + (1 | herd), cb, "cbpp", 10),
  fit_ref(y ~ 1 + (1 | herd), cb, "cbpp_null", 1),
  fit_ref(y ~ Anger + Gender + btype + situ + (1 | id), va, "verbagg", 1)
)
w(do.call(rbind, lapply(fits, `[[`, "fixed")), "variation_glmer_fixed.csv")
w(do.call(rbind, lapply(fits, `[[`, "var")), "variation_glmer_var.csv")
w(do.call(rbind, lapply(fits, `[[`, "re")), "variation_glmer_ranef.csv")

# --- 2. exact binomial funnel limits: qbinom ---------------------------------------------------
grid <- expand.grid(n = c(1, 5, 13, 50, 120, 333, 1000, 4000), target = c(0.1, 0.5, 0.84, 0.9),
                    level = c(0.95, 0.998))
grid$lower <- qbinom((1 - grid$level) / 2, grid$n, grid$target) / grid$n
grid$upper <- qbinom(1 - (1 - grid$level) / 2, grid$n, grid$target) / grid$n
w(grid, "variation_qbinom.csv")

# --- 3. direct standardisation, gamma interval (Fay & Feuer 1997), as epitools::ageadjust.direct
dsr <- function(count, pop, stdpop, conf.level = 0.95) {
  rate <- count / pop
  alpha <- 1 - conf.level
  cruderate <- sum(count) / sum(pop)
  stdwt <- stdpop / sum(stdpop)
  dsr <- sum(stdwt * rate)
  dsr.var <- sum((stdwt^2) * (count / pop^2))
  wm <- max(stdwt / pop)
  gamma.lci <- qgamma(alpha / 2, shape = (dsr^2) / dsr.var, scale = dsr.var / dsr)
  gamma.uci <- qgamma(1 - alpha / 2, shape = ((dsr + wm)^2) / (dsr.var + wm^2),
                      scale = (dsr.var + wm^2) / (dsr + wm))
  c(crude.rate = cruderate, adj.rate = dsr, lci = gamma.lci, uci = gamma.uci)
}
# illustrative counts (not real data): events and denominators of two units in 10 age strata, and a
# standard population; the point is an independent implementation of the gamma interval.
count <- c(4, 2, 3, 6, 9, 25, 36, 70, 123, 269)
pop   <- c(3379, 3206, 4007, 3926, 4230, 4474, 3744, 3011, 2396, 1418)
count2 <- c(10, 5, 8, 12, 20, 38, 60, 90, 180, 350)
pop2   <- c(6000, 6100, 6300, 6200, 6000, 5900, 5400, 4200, 3000, 1900)
std   <- c(63986.6, 186263.6, 157302.2, 97647.0, 104301.6, 89961.6, 62998.0, 51376.2, 39085.8, 23502.6)
a <- dsr(count, pop, std); b <- dsr(count2, pop2, std)
w(data.frame(unit = rep(c("A", "B"), each = 10), stratum = sprintf("s%02d", rep(1:10, 2)),
             events = c(count, count2), n = c(pop, pop2), std = rep(std, 2)), "variation_dsr_input.csv")
w(data.frame(unit = c("A", "B"), crude = c(a[1], b[1]), std_rate = c(a[2], b[2]),
             lower = c(a[3], b[3]), upper = c(a[4], b[4])), "variation_dsr.csv")
cat("wrote fixtures to", out, "\n")
