"""faredge"""
