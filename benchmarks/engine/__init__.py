"""How one training group is computed: training, evaluation, devices, timers, environment."""
