"""The learning loop: models that learn from their reviewers' corrections.

- :mod:`.settings`: a project's learning settings (when to train, the gate, the strategy, the Smart tool's engine).
- :mod:`.rounds`: one training round from accepted cases (the one training loop, time budget, progress, resume).
- :mod:`.proposer`: a project's model proposing masks in the project's label values, with an uncertainty score.
- :mod:`.gate`: the evaluation gate (candidate vs active on the same validation cases).
- :mod:`.strategies`: the order of unreviewed cases (random, uncertainty, diversity, mix).
- :mod:`.split`: the fixed per-project validation split.
- :mod:`.effort`: the simulated annotator's correction effort (voxels, clicks with a promptable engine).
- :mod:`.simulate`: ``medannot simulate``: the whole loop without a person, learning curves and effort.
"""
