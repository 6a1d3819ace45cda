"""Sections built apart from their screens or shared by two screens."""
