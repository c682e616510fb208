"""tadkit.evaluation"""
