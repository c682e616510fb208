"""Names shared by configs, data and evaluation, in one torch-free place (a config validates fast)."""

PROTOCOLS: tuple[str, ...] = ("activitynet", "thumos14")  # evaluation protocols (tadkit.evaluation)
WINDOW_RESAMPLE_MODES: tuple[str, ...] = ("interpolate", "random", "uniform")  # tadkit.data.windows
RESAMPLE_MODES: tuple[str, ...] = (*WINDOW_RESAMPLE_MODES, "acrnet")  # + ACRNet's per-bin scheme (datasets)
FPS_TABLES: tuple[str, ...] = ("a2net_thumos",)  # per-video fps tables (tadkit.data.features.FPS_TABLES)
CLIP_PLANS: tuple[str, ...] = ("thumos14", "activitynet")  # frame clips: AFSD's THUMOS_Dataset / ANET_Dataset

__all__ = ["CLIP_PLANS", "FPS_TABLES", "PROTOCOLS", "RESAMPLE_MODES", "WINDOW_RESAMPLE_MODES"]
