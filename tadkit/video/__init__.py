"""tadkit.video"""
