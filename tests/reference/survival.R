#!/usr/bin/env Rscript
# Reference values for hipfrac.survival from R's survival package (Kaplan-Meier, Cox, standardised curves).
# Re-run from the project root:  Rscript tests/reference/survival.R
# Writes tests/reference/fixtures/survival_*.csv (committed; the Python tests read them, CI has no R).
# Data: survival::veteran (Veterans' Administration lung cancer trial, 137 patients; time in days).
suppressPackageStartupMessages(library(survival))
out <- "tests/reference/fixtures"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

v <- survival::veteran
v$celltype <- as.character(v$celltype)
write.csv(v, file.path(out, "survival_veteran.csv"), row.names = FALSE)
times <- c(30, 90, 180, 365)

# --- Kaplan-Meier by cell type: survival, CI (log-log, as lifelines), numbers at risk ------------
km <- survfit(Surv(time, status) ~ celltype, data = v, conf.type = "log-log")
s <- summary(km, times = times, extend = TRUE)
write.csv(data.frame(celltype = sub("celltype=", "", as.character(s$strata)), time = s$time,
                     surv = s$surv, lower = s$lower, upper = s$upper, n_risk = s$n.risk,
                     std_err = s$std.err),
          file.path(out, "survival_km.csv"), row.names = FALSE)

# --- Cox: cell type + case mix (Efron ties) -----------------------------------------------------
fit <- coxph(Surv(time, status) ~ celltype + karno + age + trt, data = v, ties = "efron",
             control = coxph.control(eps = 1e-12, toler.chol = 1e-14, iter.max = 100))
cf <- summary(fit)$coefficients
write.csv(data.frame(term = rownames(cf), coef = cf[, "coef"], se = cf[, "se(coef)"],
                     loglik = fit$loglik[2]),
          file.path(out, "survival_cox.csv"), row.names = FALSE)

# --- standardised survival by cell type (g-computation): every patient under each cell type,
#     Breslow baseline (ctype = 1), survival exp(-H) (stype = 2), averaged over patients ----------
res <- list()
for (ct in sort(unique(v$celltype))) {
  nd <- v
  nd$celltype <- ct
  sf <- survfit(fit, newdata = nd, ctype = 1, stype = 2)
  ss <- summary(sf, times = times, extend = TRUE)
  res[[ct]] <- data.frame(celltype = ct, time = times, surv = rowMeans(ss$surv))
}
write.csv(do.call(rbind, res), file.path(out, "survival_standardised.csv"), row.names = FALSE)
cat("wrote survival fixtures to", out, "\n")

# --- the same with Breslow ties (hipfrac.survival.standardised_survival's fast engine) ------------
fitb <- coxph(Surv(time, status) ~ celltype + karno + age + trt, data = v, ties = "breslow",
              control = coxph.control(eps = 1e-12, toler.chol = 1e-14, iter.max = 100))
res <- list()
for (ct in sort(unique(v$celltype))) {
  nd <- v
  nd$celltype <- ct
  ss <- summary(survfit(fitb, newdata = nd, ctype = 1, stype = 2), times = times, extend = TRUE)
  res[[ct]] <- data.frame(celltype = ct, time = times, surv = rowMeans(ss$surv))
}
write.csv(do.call(rbind, res), file.path(out, "survival_standardised_breslow.csv"), row.names = FALSE)
cf <- summary(fitb)$coefficients
write.csv(data.frame(term = rownames(cf), coef = cf[, "coef"], se = cf[, "se(coef)"]),
          file.path(out, "survival_cox_breslow.csv"), row.names = FALSE)
