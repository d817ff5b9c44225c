"""Shipped Norwegian geography: complete hierarchies, real structure, tile layout."""

from hipfrac import geography


def test_shipped_files_are_consistent():
    geography.validate()


def test_hierarchy_counts():
    a, h, m = geography.referral_areas(), geography.hospitals(), geography.municipalities()
    assert len(a) == 19
    assert set(a["region"]) == set(geography.REGIONS)
    assert len(h) == 44
    assert set(h["region"]) == set(geography.REGIONS)
    # every referral area has at least one hospital and at least one municipality
    assert set(h["referral_area"]) == set(a["referral_area"])
    assert set(m["referral_area"]) == set(a["referral_area"])
    assert m["municipality"].str.fullmatch(r"\d{4}").all()
    assert (m["population"] > 0).all()
    assert "Oslo" in set(a["referral_area"]) and m.loc[m.municipality_name == "Oslo", "municipality"].item() == "0301"


def test_hospital_region_matches_its_area():
    a, h = geography.referral_areas(), geography.hospitals()
    merged = h.merge(a, on="referral_area", suffixes=("", "_area"))
    assert (merged["region"] == merged["region_area"]).all()


def test_volumes_sum_to_about_national_total():
    total = geography.hospitals()["volume_2018"].sum()
    assert 8500 <= total <= 10000  # NPR hip fracture operations 2018, about 9,000 a year


def test_tile_grid_is_unique_and_north_is_up():
    t = geography.tile_grid()
    assert len(t) == 19 and not t[["row", "col"]].duplicated().any()
    row = dict(zip(t["referral_area"], t["row"]))
    assert row["Finnmark"] < row["Nordland"] < row["St. Olav"] < row["Oslo"] < row["Sørlandet"]


def test_catchment_covers_every_hospital():
    c = geography.catchment()
    assert set(c["hospital"]) == set(geography.hospitals()["hospital"])
