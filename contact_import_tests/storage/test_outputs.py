"""storage.outputs: a step's output survives the trip through a file or the bucket unchanged."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from contact_import_pipeline.storage.outputs import dump, load


def test_frames_round_trip_without_losing_types() -> None:
    frame = pd.DataFrame(
        {"a": pd.Series(["x", None, "z"], dtype=pd.StringDtype("pyarrow", na_value=np.nan)), "n": [1, 2, 3]}
    )
    buffer = io.BytesIO()
    dump({"frame": frame, "rest": [1, "two"]}, buffer)
    restored = load(buffer.getvalue())
    pd.testing.assert_frame_equal(restored["frame"], frame)
    assert restored["rest"] == [1, "two"]


def test_a_slice_of_a_big_frame_is_stored_as_its_own_rows_only() -> None:
    text = pd.StringDtype("pyarrow", na_value=np.nan)
    whole = pd.DataFrame({"name": pd.Series([f"contact number {i:07d}" for i in range(100_000)], dtype=text)})
    part = pd.concat([whole.iloc[50_000:51_000]], ignore_index=True)  # how a batch takes its rows
    sizes = []
    for frame in (whole, part):
        buffer = io.BytesIO()
        dump(frame, buffer)
        pd.testing.assert_frame_equal(load(buffer.getvalue()), frame)
        sizes.append(buffer.tell())
    assert sizes[1] * 50 < sizes[0]  # 1% of the rows: about 1% of the bytes, not the whole columns
