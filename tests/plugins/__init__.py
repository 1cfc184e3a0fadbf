"""A provider that exists only in the tests: Textline, a fictional SMS platform keyed by phone.

Its client (`textline.py`) and its emulator (`textline_emulator.py`) plug into Syncapp and
the sandbox as a real provider would, without being one: they prove that the plug-in
interfaces carry a system whose records are keyed by phone, not email.
"""
