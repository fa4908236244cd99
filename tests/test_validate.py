"""Validation: the real data passes; broken copies fail with a message that names the
file, the column, the rule and example rows; nothing is ever modified."""

import gzip
import shutil

import pytest

from cli.main import main as cli
from seqcast.config import load_params
from seqcast.errors import DataValidationError
from seqcast.tracking import file_md5
from tasks.connectors import uci_prsa
from tasks.validate import validate_file, validate_table

PM25_FILE = "PRSA_data_2010.1.1-2014.12.31.csv"


@pytest.fixture(scope="module")
def params():
    return load_params()


def broken_copy(src, dest, edit):
    lines = src.read_text().splitlines(keepends=True)
    dest.write_text("".join(edit(lines)))
    return dest


def test_real_data_passes(mirror, params, tmp_path):
    report = validate_file(mirror / "market" / "KS11.csv", "market", params)
    assert report["^KS11"]["success"] and report["^KS11"]["missing_y"] == 7  # the file stem names its symbol
    # the 7 null closes are a tolerated quirk: a warning naming the rule, both columns and the lines
    (warning,) = report["^KS11"]["warnings"]
    assert warning["rule"].startswith("expect_column_values_to_not_be_null") and warning["count"] == 7
    assert warning["column"] == "y" and warning["file_column"] == "'Close'" and len(warning["example_lines"]) == 5
    tidy = uci_prsa.parse_csv(mirror / "pm25" / PM25_FILE, "us_embassy", "Asia/Shanghai", "pm25")
    report = validate_table(tidy, "pm25", params.dataset("pm25"), ["pm25"], tmp_path / "docs")
    assert report["us_embassy"]["longest_missing_run"] == 155
    assert (tmp_path / "docs" / "index.html").is_file()  # Data Docs


def test_high_below_low_names_file_column_rule_and_row(mirror, params, tmp_path):
    """One High < Low row is a tolerated quirk (warning); 2 % of the rows is an error."""
    def swap(rows):
        def edit(lines):
            for i in rows:  # High and Low swapped
                f = lines[i - 1].split(",")
                f[2], f[3] = f[3], f[2]
                lines[i - 1] = ",".join(f)
            return lines
        return edit

    path = broken_copy(mirror / "market" / "KS11.csv", tmp_path / "KS11.csv", swap([100]))
    before = file_md5(path)
    report = validate_file(path, "market", params)["^KS11"]
    (quirk,) = [w for w in report["warnings"] if w["column"] == "high/low"]
    assert quirk["rule"].startswith("expect_column_pair_values_a_to_be_greater_than_b")
    assert quirk["file_column"] == "'High'/'Low'" and quirk["example_lines"] == [100] and quirk["count"] == 1
    many = list(range(100, 150))  # 50 swaps; one of those days had High == Low: 49 rows break the rule
    path = broken_copy(mirror / "market" / "KS11.csv", tmp_path / "KS11.csv", swap(many))
    with pytest.raises(DataValidationError) as err:
        validate_file(path, "market", params)
    text = str(err.value)
    assert str(path) in text and "column 'high/low' (file column 'High'/'Low')" in text
    assert "expect_column_pair_values_a_to_be_greater_than_b" in text and "49 of 2465 rows fail" in text
    assert lines_date(mirror, 100) in text  # the offending row is shown, with its file line
    assert file_md5(path) == file_md5(tmp_path / "KS11.csv")  # never modified
    assert before != file_md5(path)


def lines_date(mirror, line_no):
    return (mirror / "market" / "KS11.csv").read_text().splitlines()[line_no - 1].split(",")[0]


def test_pm25_out_of_range_duplicate_and_missing_hour(mirror, params, tmp_path):
    def edit(lines):
        f = lines[1001].split(",")
        f[5] = "2500"  # above the physical range
        lines[1001] = ",".join(f)
        del lines[2001]  # a missing hour
        lines.insert(3001, lines[3000])  # a duplicated hour
        return lines

    path = broken_copy(mirror / "pm25" / PM25_FILE, tmp_path / PM25_FILE, edit)
    with pytest.raises(DataValidationError) as err:
        validate_file(path, "pm25", params)
    text = str(err.value)
    assert "expect_column_values_to_be_between" in text and "column 'y'" in text and "2500" in text
    assert "expect_compound_columns_to_be_unique" in text
    assert "column 'steps'" in text and "max_value=1" in text  # the hourly calendar rule: every hour present
    assert len(err.value.failures) >= 3


def test_non_numeric_value_names_the_line(mirror, params, tmp_path):
    def edit(lines):
        f = lines[41].split(",")
        f[4] = "12O5.3"  # a letter O instead of a zero
        lines[41] = ",".join(f)
        return lines

    path = broken_copy(mirror / "market" / "KS11.csv", tmp_path / "KS11.csv", edit)
    with pytest.raises(DataValidationError) as err:
        validate_file(path, "market", params)
    failure = err.value.failures[0]
    assert failure.column == "y" and failure.source_column == "Close"  # internal and file column
    assert failure.count == 1 and "numeric" in failure.rule
    assert list(failure.examples.index) == [42]  # the line number in the file


def test_too_many_missing_values(mirror, params, tmp_path):
    src = mirror / "pm25_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv.gz"
    tidy = uci_prsa.parse_csv(src, "Dongsi", "Asia/Shanghai", "pm25")
    tidy.loc[:5000, "y"] = float("nan")
    with pytest.raises(DataValidationError) as err:
        validate_table(tidy, "pm25", params.dataset("pm25"), [str(src)])
    rules = " ".join(f.rule for f in err.value.failures)
    assert "expect_column_values_to_not_be_null" in rules
    assert {"y", "null_run"} <= {f.column for f in err.value.failures}  # too many, and a run too long


def test_cli_exit_codes(mirror, tmp_path, capsys):
    assert cli(["validate", str(mirror / "market" / "KS11.csv"), "--dataset", "market"]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "KS11.csv"
    bad.write_text("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1\n")
    assert cli(["validate", str(bad), "--dataset", "market"]) == 1
    err = capsys.readouterr().err
    assert "required column missing" in err and "Adj Close" in err and str(bad) in err
    gz = tmp_path / "PRSA_Data_Dongsi_x.csv.gz"
    with gzip.open(mirror / "pm25_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv.gz") as fin, \
            gzip.open(gz, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    assert cli(["validate", str(gz), "--dataset", "pm25"]) == 0
