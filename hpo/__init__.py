"""hpo: hyperparameter and fine-tuning-strategy search for Hugging Face models on Ray Tune."""

from hpo.sealed_env import unseal_into_environ as _unseal_into_environ

# A job `hpo submit` started carries its secrets sealed; every hpo process there (the driver,
# each trial worker) opens them on import. A no-op anywhere else.
_unseal_into_environ()
