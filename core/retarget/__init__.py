"""Retargeting: map motion clips and BVH input onto other humanoid rigs."""
