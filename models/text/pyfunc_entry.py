"""MLflow models-from-code entry: ``mlflow.pyfunc.log_model(python_model=<this file>)`` runs it at load."""

import mlflow

from models.text.pyfunc import GPTTextModel

mlflow.models.set_model(GPTTextModel())
