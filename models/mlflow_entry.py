"""MLflow models-from-code entry: the file MLflow runs to build the pyfunc model."""

from mlflow.models import set_model

from models.pyfunc import ForecasterModel

set_model(ForecasterModel())
