"""Service platform for veterans on monthly retirement pay (逐月领取退役金退役军人服务平台)."""
