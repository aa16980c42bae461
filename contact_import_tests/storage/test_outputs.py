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
