"""The Iris classifier of the default configuration, trained from scikit-learn's own copy
of the data set (no download) and saved as ``<repository>/iris/1/model.joblib``.

Run as ``python -m modelport.runtimes.iris REPOSITORY`` so that scikit-learn is imported in
a short-lived process, not in the server.
"""

from __future__ import annotations

import sys
from pathlib import Path


def train_iris(repository: Path) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    target = repository / "iris" / "1" / "model.joblib"
    if target.exists():
        return target
    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    joblib.dump(model, partial)
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(train_iris(Path(sys.argv[1])))
