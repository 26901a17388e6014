"""The Faust layer: the only package that imports Faust."""
