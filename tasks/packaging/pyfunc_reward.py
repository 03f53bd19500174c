"""Models-from-code entry point for a registered reward model (no pickled objects)."""
import mlflow

from tasks.packaging.pyfunc import RewardModel

mlflow.models.set_model(RewardModel())
