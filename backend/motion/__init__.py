"""HumanML3D / KIT motion representation: skeletons, quaternions, 263-D features <-> joints. numpy only."""
