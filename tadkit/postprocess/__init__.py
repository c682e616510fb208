"""tadkit.postprocess"""
