"""defs.launch: a run's key names exactly the set of file versions it imports."""

from __future__ import annotations

from contact_import_pipeline.defs import launch


def test_run_key_is_a_digest_of_the_set_of_versions() -> None:
    a, b = ("ws1/imports/a.csv", "v1"), ("ws1/imports/b.csv", "v1")
    assert launch.run_key([a, b]) == launch.run_key([b, a])
    assert launch.run_key([a, b]) != launch.run_key([a, ("ws1/imports/b.csv", "v2")])
    assert launch.run_key([a]) != launch.run_key([a, b])
