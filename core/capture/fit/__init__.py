"""Whole-sequence fitting of a body to a video's keypoints, in the spirit of HuMoR's test-time optimisation.

initialise.py makes the first guess (pose from BlazePose's 3D landmarks, depth
from the 2D ones, a level camera above the ground); solve.py refines everything
at once in three stages (global placement, full pose, then temporal and contact
terms) with the loss terms of terms.py and the pluggable priors of priors.py,
on the small differentiable body of torch_body.py.
"""
