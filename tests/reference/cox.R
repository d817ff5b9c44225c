# Reference fixtures for hipfrac.risk's Cox models and proportional-hazards diagnostics.
# Re-run from the project root:  Rscript tests/reference/cox.R
# Writes tests/reference/fixtures/cox_*.csv. Needs the R package survival (>= 3.0).
#
# Data: survival::lung (NCCTG advanced lung cancer; Loprinzi et al. 1994), time in days (with ties),
# status 2 = dead. Rows with a missing covariate are dropped, as coxph does.
suppressPackageStartupMessages(library(survival))
out <- "tests/reference/fixtures"
dir.create(out, showWarnings = FALSE, recursive = TRUE)

d <- survival::lung
d$dead <- as.integer(d$status == 2)
d$male <- as.integer(d$sex == 1)
d$ecog <- factor(d$ph.ecog)                       # 0, 1, 2, 3 (3 has one patient)
d <- d[complete.cases(d[, c("time", "dead", "age", "male", "ph.ecog", "inst")]), ]
d <- d[d$ph.ecog < 3, ]                           # drop the single ECOG-3 patient (a one-row level)
d$ecog <- droplevels(d$ecog)
write.csv(d[, c("time", "dead", "age", "male", "ph.ecog", "inst", "wt.loss")],
          file.path(out, "cox_lung.csv"), row.names = FALSE, na = "")

rows <- list()
for (ties in c("efron", "breslow")) {
  f <- coxph(Surv(time, dead) ~ age + male + ecog, data = d, ties = ties)
  rows[[ties]] <- data.frame(model = paste0("plain_", ties), term = names(coef(f)), coef = unname(coef(f)),
                             se = sqrt(diag(vcov(f))), loglik = f$loglik[2], concordance = f$concordance[["concordance"]])
}
# cluster-robust (sandwich) standard errors by institution
f <- coxph(Surv(time, dead) ~ age + male + ecog, data = d, ties = "efron", cluster = inst)
rows[["robust"]] <- data.frame(model = "robust_inst", term = names(coef(f)), coef = unname(coef(f)),
                               se = sqrt(diag(vcov(f))), loglik = f$loglik[2], concordance = f$concordance[["concordance"]])
f <- coxph(Surv(time, dead) ~ age + male + ecog, data = d, ties = "breslow", cluster = inst)
rows[["robust_b"]] <- data.frame(model = "robust_inst_breslow", term = names(coef(f)), coef = unname(coef(f)),
                                 se = sqrt(diag(vcov(f))), loglik = f$loglik[2], concordance = f$concordance[["concordance"]])
# stratified by institution (hospital as stratum)
for (ties in c("efron", "breslow")) {
  f <- coxph(Surv(time, dead) ~ age + male + ecog + strata(inst), data = d, ties = ties)
  rows[[paste0("strata", ties)]] <- data.frame(model = paste0("strata_inst_", ties), term = names(coef(f)),
                                               coef = unname(coef(f)), se = sqrt(diag(vcov(f))),
                                               loglik = f$loglik[2], concordance = NA)
}
# survival at 365 days for a profile (age 65, male, ECOG 1), Breslow fit and Breslow baseline
f <- coxph(Surv(time, dead) ~ age + male + ecog, data = d, ties = "breslow")
sf <- survfit(f, newdata = data.frame(age = 65, male = 1, ecog = factor("1", levels = c("0", "1", "2"))))
rows[["pred"]] <- data.frame(model = "predict_breslow", term = c("surv_180", "surv_365"),
                             coef = summary(sf, times = c(180, 365))$surv, se = NA, loglik = NA, concordance = NA)
write.csv(do.call(rbind, rows), file.path(out, "cox_coef.csv"), row.names = FALSE)

# --- proportional hazards tests -----------------------------------------------------------------
# (1) survival >= 3.0 cox.zph: a score test of adding x * g(t), using the full information matrix.
# (2) the Grambsch-Therneau (1994) approximation from scaled Schoenfeld residuals that cox.zph used
#     before survival 3.0 and that lifelines' proportional_hazard_test implements:
#     T_j = (sum_k (g_k - mean g) r*_kj)^2 / (d * var(b_j) * sum_k (g_k - mean g)^2)
zrows <- list()
for (ties in c("efron", "breslow"))
for (tr in c("km", "identity", "rank")) {
  f <- coxph(Surv(time, dead) ~ age + male + ph.ecog, data = d, ties = ties)
  z <- cox.zph(f, transform = tr, terms = FALSE)
  sch <- residuals(f, type = "scaledsch")            # rows = event times (sorted)
  ev_t <- as.numeric(rownames(sch))
  if (tr == "km") {
    km <- survfit(Surv(time, dead) ~ 1, data = d)
    g <- 1 - c(1, km$surv)[findInterval(ev_t, km$time, left.open = TRUE) + 1]   # left-continuous, as cox.zph
  } else if (tr == "identity") g <- ev_t else g <- rank(ev_t)
  gc <- g - mean(g)
  nd <- nrow(sch)
  approx <- colSums(gc * sch)^2 / (nd * diag(vcov(f)) * sum(gc^2))
  zrows[[paste(ties, tr)]] <- data.frame(ties = ties, transform = tr, term = c(names(coef(f)), "GLOBAL"),
                            chisq = z$table[, "chisq"], df = z$table[, "df"], p = z$table[, "p"],
                            chisq_gt_approx = c(unname(approx), NA))
}
write.csv(do.call(rbind, zrows), file.path(out, "cox_zph.csv"), row.names = FALSE, na = "")
cat("wrote cox fixtures\n")

# --- Harrell's C with heavy ties in time and in the risk score -----------------------------------
set.seed(20261123)
tt <- data.frame(t = sample(1:60, 1500, replace = TRUE), e = rbinom(1500, 1, 0.5), r = sample(0:14, 1500, replace = TRUE))
write.csv(tt, file.path(out, "cox_concordance_ties.csv"), row.names = FALSE)
cc <- concordance(Surv(t, e) ~ r, data = tt, reverse = TRUE)   # higher r = higher risk
write.csv(data.frame(concordance = cc$concordance), file.path(out, "cox_concordance_ties_ref.csv"), row.names = FALSE)
