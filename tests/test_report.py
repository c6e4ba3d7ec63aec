"""bench/report.py: pytest-benchmark JSON -> markdown rows and ratios."""
import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("report", Path(__file__).parent.parent / "bench" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_rows_and_ratios_including_interleaved_medians(tmp_path):
    data = {"benchmarks": [
        {"group": "op A", "param": "c", "extra_info": {"impl": "c"}, "stats": {"median": 0.002}},
        {"group": "op A", "param": "numpy", "extra_info": {"impl": "numpy"}, "stats": {"median": 0.010}},
        {"group": "op A", "param": "torch", "extra_info": {"impl": "torch"}, "stats": {"median": 0.004}},
        # one benchmark that timed three implementations in turn
        {"group": "frac", "param": None, "extra_info": {"impl": "c+numba+torch",
                                                       "medians": {"c": 1.0, "numba": 1.5, "torch": 2.0}},
         "stats": {"median": 4.6}},
    ]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    groups = report.load(path)
    assert groups == {"op A": {"c": 0.002, "numpy": 0.010, "torch": 0.004},
                      "frac": {"c": 1.0, "numba": 1.5, "torch": 2.0}}
    table = report.markdown(groups)
    assert "| op A | c | 2.00 ms | 0.20x | 0.50x |  |" in table
    assert "| frac | numba | 1.50 s |  | 0.75x |  |" in table
    assert "c+numba+torch" not in table


def test_thread_scaling_rows_get_their_own_table(tmp_path):
    data = {"benchmarks": [
        {"group": "op A", "param": "c", "extra_info": {"impl": "c"}, "stats": {"median": 0.002}},
        {"group": "1 vs 2 threads: im2col(out=) 128x64x32x32", "param": "c",
         "extra_info": {"impl": "c", "thread_scaling": {"impl": "c", "one": 0.030, "two": 0.018,
                                                         "speedup": 1.62}},
         "stats": {"median": 0.048}},
    ]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    assert report.load(path) == {"op A": {"c": 0.002}}  # not in the main table
    table = report.thread_table(report.load_thread_scaling(path))
    assert "| im2col(out=) 128x64x32x32 | c | 30.00 ms | 18.00 ms | 1.62x |" in table
    md = tmp_path / "run.md"
    report.main([str(path), "--md", str(md)])
    assert "| op A | c | 2.00 ms |" in md.read_text() and "1.62x" in md.read_text()
