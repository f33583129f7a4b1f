"""The processing pipeline for one file: open it safely, learn its facts, write its note.

`process.process_file` is the entry point; the other modules each do one step and are usable on their own.
"""
