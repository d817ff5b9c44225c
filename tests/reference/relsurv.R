#!/usr/bin/env Rscript
# Reference values for hipfrac.relsurv from R's relsurv and survival packages.
# Re-run from the project root:  Rscript tests/reference/relsurv.R
# Writes tests/reference/fixtures/relsurv_*.csv (committed; the Python tests read them, CI has no R).
#
# Data: relsurv's own colrec (5,971 colorectal cancer patients, Slovenia 1994-2000) with the slopop
# rate table (Slovenian population hazards per day, by age 0-103, calendar year and sex).
# Unit conventions of relsurv: time in days, rates per day, 365.241 days per year of age.
suppressPackageStartupMessages({library(survival); library(relsurv)})
out <- "tests/reference/fixtures"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
DPY <- 365.241
data(colrec); data(slopop)

# --- slopop as a table `year, age, sex, rate` (deaths per person-year) --------------------------
# slopop's year dimension is a step function between its cut dates (1930, 1948, 1952, ..., 1980, 1982,
# 1983, ..., 2020); expand it to single calendar years 1990-2020 (the years colrec needs).
cut_years <- as.integer(dimnames(slopop)[[2]])
ages <- 0:(dim(slopop)[1] - 1)
rows <- list()
for (y in 1990:2020) {
  j <- max(which(cut_years <= y))
  for (s in 1:2) {
    rows[[length(rows) + 1]] <- data.frame(year = y, age = ages, sex = c("male", "female")[s],
                                           rate = as.numeric(slopop[, j, s]) * DPY)
  }
}
lt <- do.call(rbind, rows)
write.csv(lt, file.path(out, "relsurv_slopop.csv"), row.names = FALSE)

# --- colrec in the hipfrac input units ------------------------------------------------------------
d <- as.Date(as.numeric(colrec$diag), origin = "1960-01-01")
yr <- as.integer(format(d, "%Y"))
leap <- (yr %% 4 == 0 & yr %% 100 != 0) | (yr %% 400 == 0)
year_dec <- yr + (as.integer(format(d, "%j")) - 1) / ifelse(leap, 366, 365)
cr <- data.frame(time = colrec$time, stat = colrec$stat, age = colrec$age / DPY,
                 sex = c("male", "female")[colrec$sex], year = year_dec,
                 stage = as.character(colrec$stage), site = as.character(colrec$site))
write.csv(cr, file.path(out, "relsurv_colrec.csv"), row.names = FALSE)

# --- net survival: Pohar Perme and Ederer II --------------------------------------------------------
times <- c(30, 90, 182, round(c(1, 2, 3, 5, 10) * DPY))
res <- list()
for (m in c("pohar-perme", "ederer2")) {
  # add.times: the curve is evaluated at the requested times themselves (the population hazard is
  # integrated up to them), not at the last event before them
  fit <- rs.surv(Surv(time, stat) ~ 1, data = colrec, ratetable = slopop, method = m,
                 rmap = list(age = age, sex = sex, year = diag), add.times = times)
  s <- summary(fit, times = times)
  res[[m]] <- data.frame(method = m, time = s$time, surv = s$surv, std_err = s$std.err,
                         lower = s$lower, upper = s$upper, n_risk = s$n.risk)
}
write.csv(do.call(rbind, res), file.path(out, "relsurv_netsurv.csv"), row.names = FALSE)

# by sex (strata), Pohar Perme, to check grouped use
fit <- rs.surv(Surv(time, stat) ~ sex, data = colrec, ratetable = slopop, method = "pohar-perme",
               rmap = list(age = age, sex = sex, year = diag), add.times = times)
s <- summary(fit, times = times)
write.csv(data.frame(sex = ifelse(grepl("1", s$strata), "male", "female"), time = s$time,
                     surv = s$surv, std_err = s$std.err),
          file.path(out, "relsurv_netsurv_by_sex.csv"), row.names = FALSE)

# Pohar Perme at requested times in subgroups where the weights are large (old patients, late stage; sparse
# events late in follow-up, so the requested times fall between events), both sexes.
# rs.surv (2.2-9) treats the population part of each interval between evaluation times as a jump,
# cumprod(1 - haz), so its estimate depends on the time grid; evaluated on finer and finer grids (add.times
# every `step` days) it converges to the product integral. The fixture keeps the estimate at two steps
# (0.5 and 0.25 days): the Python test checks that hipfrac lies where the refinement is heading.
sub_times <- sort(c(round(c(1, 3, 5, 7, 10) * DPY), round(c(1, 3, 5, 7, 10) * DPY) + 0.5))
subgroups <- list(age80 = colrec$age / DPY > 80, stage3 = colrec$stage == 3,
                  age80_stage3 = colrec$age / DPY > 80 & colrec$stage == 3)
res <- list()
for (g in names(subgroups)) for (step in c(0, 0.5, 0.25)) {
  dd <- colrec[subgroups[[g]], ]
  grid <- if (step > 0) sort(union(sub_times, seq(step, max(dd$time), by = step))) else sub_times
  fit <- rs.surv(Surv(time, stat) ~ sex, data = dd, ratetable = slopop, method = "pohar-perme",
                 rmap = list(age = age, sex = sex, year = diag), add.times = grid)
  s <- summary(fit, times = sub_times, extend = FALSE)
  res[[paste(g, step)]] <- data.frame(subgroup = g, step_days = step,
                                      sex = ifelse(grepl("1", s$strata), "male", "female"), time = s$time,
                                      surv = s$surv, std_err = s$std.err, n_risk = s$n.risk)
}
write.csv(do.call(rbind, res), file.path(out, "relsurv_netsurv_subgroups.csv"), row.names = FALSE)

# --- expected survival (Ederer I, cohort expected survival) -----------------------------------------
ex <- survexp(~1, data = colrec, ratetable = slopop, method = "ederer",
              rmap = list(age = age, sex = sex, year = diag), times = times)
write.csv(data.frame(time = ex$time, surv = as.numeric(ex$surv)),
          file.path(out, "relsurv_expected.csv"), row.names = FALSE)

# --- person-years, observed and expected deaths by time since diagnosis (survival::pyears) ------
brk <- c(0, 30, 90, DPY, 2 * DPY, 5 * DPY, 10 * DPY, 100 * DPY)
py <- pyears(Surv(time, stat) ~ tcut(rep(0, nrow(colrec)), brk) + sex, data = colrec,
             ratetable = slopop, rmap = list(age = age, sex = sex, year = diag), scale = DPY)
pyt <- data.frame(expand.grid(band = seq_len(length(brk) - 1), sex = c("male", "female")),
                  person_years = as.numeric(py$pyears), observed = as.numeric(py$event),
                  expected = as.numeric(py$expected))
pyt$start <- brk[pyt$band]
pyt$stop <- brk[pyt$band + 1]
write.csv(pyt[, c("sex", "start", "stop", "person_years", "observed", "expected")],
          file.path(out, "relsurv_pyears.csv"), row.names = FALSE)

# --- excess hazard regression: Dickman et al. 2004 Poisson GLM (relsurv::rsadd, glm.poi) ----------
cr2 <- colrec
cr2$agegr <- cut(cr2$age / DPY, c(0, 65, 75, 200), right = FALSE)
cr2$male <- as.integer(cr2$sex == 1)
fit <- rsadd(Surv(time, stat) ~ male + agegr, data = cr2, ratetable = slopop, method = "glm.poi",
             int = c(0, 1, 3, 5, 10), rmap = list(age = age, sex = sex, year = diag))
cf <- summary(fit)$coefficients
write.csv(data.frame(term = rownames(cf), estimate = cf[, 1], std_err = cf[, 2]),
          file.path(out, "relsurv_rsadd.csv"), row.names = FALSE)

# --- timing of rs.surv on colrec (median of 3 runs, seconds) -------------------------------------
tm <- sapply(c("pohar-perme", "ederer2"), function(m) median(replicate(3, system.time(
  rs.surv(Surv(time, stat) ~ 1, data = colrec, ratetable = slopop, method = m,
          rmap = list(age = age, sex = sex, year = diag)))[["elapsed"]])))
write.csv(data.frame(method = names(tm), seconds = as.numeric(tm),
                     relsurv_version = as.character(packageVersion("relsurv"))),
          file.path(out, "relsurv_timing.csv"), row.names = FALSE)
cat("wrote fixtures to", out, "\n")

# --- excess hazard regression on an aggregated pyears table with glm and the log(mu - d*) link ----
# The same model as hipfrac.relsurv.ExcessHazardFitter (Dickman et al. 2004), fitted by R's glm on
# exact person-years / observed / expected deaths from survival::pyears.
brk2 <- c(0, 1, 3, 5, 10) * DPY
cr3 <- colrec
cr3$male <- as.integer(cr3$sex == 1)
cr3$agegr <- cut(cr3$age / DPY, c(0, 65, 75, 200), right = FALSE, labels = c("<65", "65-74", "75+"))
py2 <- pyears(Surv(time, stat) ~ tcut(rep(0, nrow(cr3)), brk2) + male + agegr, data = cr3,
              ratetable = slopop, rmap = list(age = age, sex = sex, year = diag), scale = DPY,
              data.frame = TRUE)$data
agg <- data.frame(band = as.character(py2[[1]]), male = as.integer(as.character(py2$male)),
                  age_group = as.character(py2$agegr), person_years = py2$pyears,
                  observed = py2$event, expected = py2$expected)
agg <- agg[agg$person_years > 0, ]
agg$fu <- factor(match(agg$band, unique(agg$band)))
dickman <- function(dstar) {
  fam <- poisson()
  fam$linkfun <- function(mu) log(mu - dstar)
  fam$linkinv <- function(eta) dstar + exp(eta)
  fam$mu.eta <- function(eta) exp(eta)
  fam$valideta <- function(eta) TRUE
  fam$link <- "log(mu - d*)"
  fam
}
g <- glm(observed ~ -1 + fu + male + age_group + offset(log(person_years)), data = agg,
         family = dickman(agg$expected), mustart = pmax(agg$observed, agg$expected + 0.5),
         control = glm.control(epsilon = 1e-12, maxit = 100))
cf <- summary(g)$coefficients
write.csv(agg[, c("band", "fu", "male", "age_group", "person_years", "observed", "expected")],
          file.path(out, "relsurv_excess_agg.csv"), row.names = FALSE)
write.csv(data.frame(term = rownames(cf), estimate = cf[, 1], std_err = cf[, 2],
                     deviance = deviance(g), df_resid = df.residual(g)),
          file.path(out, "relsurv_excess_glm.csv"), row.names = FALSE)
cat("excess glm done\n")

# --- life years lost: relsurv::years, measure "yd" (expected minus observed restricted mean) -----
# yd(tau) = integral_0^tau [S_E(t) - S_O(t)] dt / 365.241: S_O Kaplan-Meier, S_E the cohort's expected
# survival with everyone followed (Ederer I, relsurv integrates it on a grid of every follow-up time and
# `precision` = 30 days); Greenwood-type variance of the observed restricted mean, the expected part fixed.
# Overall, by sex and in the old subgroup (sparse late events), at 1, 5 and 10 years.
taus <- round(c(1, 5, 10) * DPY)
ysub <- list(all = rep(TRUE, nrow(colrec)), male = colrec$sex == 1, female = colrec$sex == 2,
             age80 = colrec$age / DPY > 80)
# The expected part depends on relsurv's grid (a left Riemann sum of 1 - S_E); kept at the default 30 days
# and at 5 and 1 day: the Python test checks that hipfrac's exact integral is where the refinement heads.
res <- list()
for (g in names(ysub)) for (prec in c(30, 5, 1)) {
  dd <- colrec[ysub[[g]], ]
  y <- years(Surv(time, stat) ~ 1, data = dd, ratetable = slopop, measure = "yd", var.estimator = "greenwood",
             rmap = list(age = age, sex = sex, year = diag), add.times = taus, precision = prec)
  yy <- y$years[match(taus, y$years$time), ]
  fo <- y$F_O[match(taus, y$F_O$time), ]
  fp <- y$F_P[match(taus, y$F_P$time), ]
  res[[paste(g, prec)]] <- data.frame(subgroup = g, precision_days = prec, tau_days = taus,
                                      years_lost = yy$est, std_err = yy$est.se,
                                      observed_area = fo$area, expected_area = fp$area)
}
write.csv(do.call(rbind, res), file.path(out, "relsurv_years.csv"), row.names = FALSE)

# --- crude probability of death: relsurv::cmp.rel (excess and population causes) ---------------
# Evaluated on a 1-day grid plus every follow-up time (precision = 1); with every follow-up time on the
# grid the estimator does not depend on it (the number at risk is constant between grid times). Read off
# the returned curve at the requested times (summary.cmp.rel with `times` returns the last value for
# every time in 2.2-9), between events too (x.5 days).
ctimes <- sort(c(round(c(1, 3, 5, 7, 10) * DPY), round(c(1, 3, 5, 7, 10) * DPY) + 0.5))
csub <- list(all = rep(TRUE, nrow(colrec)), male = colrec$sex == 1, female = colrec$sex == 2,
             age80 = colrec$age / DPY > 80)
res <- list()
for (g in names(csub)) {
  dd <- colrec[csub[[g]], ]
  tt <- ctimes[ctimes <= max(dd$time)]   # beyond the last follow-up no one is at risk (NaN, and an error)
  # tau: the curve up to the last requested time (over 80 the last patient dies at the last follow-up
  # time, the Kaplan-Meier estimate reaches 0 and cmp.rel 2.2-9 stops on a NaN variance there)
  cr <- cmp.rel(Surv(time, stat) ~ 1, data = dd, ratetable = slopop, add.times = tt, tau = max(tt),
                rmap = list(age = age, sex = sex, year = diag))
  i <- match(tt, cr$causeSpec$time)
  res[[g]] <- data.frame(subgroup = g, time = tt, prob_excess = cr$causeSpec$est[i],
                         var_excess = cr$causeSpec$var[i], prob_population = cr$population$est[i],
                         var_population = cr$population$var[i])
}
write.csv(do.call(rbind, res), file.path(out, "relsurv_cmprel.csv"), row.names = FALSE)
cat("years and cmp.rel done\n")
