"""Models-from-code entry point for a registered classifier (no pickled objects)."""
import mlflow

from tasks.packaging.pyfunc import ClassifierModel

mlflow.models.set_model(ClassifierModel())
