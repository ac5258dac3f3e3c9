"""Knowledge distillation (temporary placeholder of the student branch)."""
