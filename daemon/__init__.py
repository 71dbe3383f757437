"""instrumentd.daemon"""
