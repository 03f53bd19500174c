"""Models-from-code entry point that MLflow copies into every logged model (no pickled objects)."""
import mlflow

from tasks.packaging.pyfunc import AdapterModel

mlflow.models.set_model(AdapterModel())
