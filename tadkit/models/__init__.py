"""tadkit.models"""
