"""The operator's default MLflow tracking URI (the chart's tracking.mlflow.trackingUri).

Pins:
- `--mlflow-tracking-uri` and `TRAINSMART_OPERATOR_MLFLOW_TRACKING_URI` give the same option; unset: none;
- a URI that is not http(s), or carries credentials, is refused at startup without echoing the credentials.
"""

from __future__ import annotations

import pytest

from trainsmart.operator_config import OperatorConfigError, operator_options, operator_parser, options_from_environment


def test_flag_and_environment_give_the_default_uri() -> None:
    uri = "http://mlflow.mlops:5000"
    assert operator_options(operator_parser({}).parse_args(["--mlflow-tracking-uri", uri])).mlflow_tracking_uri == uri
    assert options_from_environment({"TRAINSMART_OPERATOR_MLFLOW_TRACKING_URI": uri}).mlflow_tracking_uri == uri
    assert options_from_environment({}).mlflow_tracking_uri is None


@pytest.mark.parametrize("uri", ["mlflow:5000", "ftp://mlflow", "https://me:hunter2@mlflow"])
def test_unusable_or_credentialed_uris_are_refused(uri: str) -> None:
    with pytest.raises(OperatorConfigError) as error:
        options_from_environment({"TRAINSMART_OPERATOR_MLFLOW_TRACKING_URI": uri})
    assert "hunter2" not in str(error.value)
