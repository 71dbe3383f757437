"""instrumentd.training"""
