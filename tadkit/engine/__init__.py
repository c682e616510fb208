"""tadkit.engine"""
