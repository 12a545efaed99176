"""Backend-agnostic core: the job model, the rules' contract, client and worker."""
