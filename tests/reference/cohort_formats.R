# Writes the SAS (.sas7bdat) fixture read by tests/test_ingest.py (pyreadstat cannot write sas7bdat).
# The same content is built in Python in tests/test_ingest.py (FORMAT_TABLE); the test checks every format
# (CSV UTF-8, CSV Latin-1 with decimal comma, parquet, Stata, SPSS, SAS) reads to the same typed frame.
# Run from the project root: Rscript tests/reference/cohort_formats.R
library(haven)
df <- data.frame(
  person_id = c("P0000001", "P0000002", "P0000003"),
  asa = c(1, 3, NA),
  ddd = c(1.5, 90, NA),
  dispensing_date = as.Date(c("2015-06-10", "2016-02-29", NA)),
  surgery_datetime = as.POSIXct(c("2015-06-11 09:30:00", "2016-03-01 23:05:00", NA), tz = "UTC"),
  municipality = c("0301", "5401", "4601"),
  stringsAsFactors = FALSE)
out <- file.path("tests", "reference", "fixtures", "cohort_formats.sas7bdat")
suppressWarnings(write_sas(df, out))
print(read_sas(out))
