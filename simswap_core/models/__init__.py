"""Model files: what they are, where they are, how they are fetched, read safely and loaded.

    catalogue          the known files (ModelFile, CATALOGUE, ALIASES, RECOMMENDED, KINDS)
    find               search folders, find_model, the "missing file" message, fetch_command
    download           fetching URLs (mirrors, resume, checksums, zip members) and publishing downloads
    install            installing catalogue entries into a models folder, checking them, first-download records
    installer_cli      the installer's command line (``python install.py``)
    safe_pickle        the allow-list unpickler (nothing from a file runs)
    pickle_containers  torch's zip/legacy checkpoint containers, read through that unpickler
    checkpoints        reading a checkpoint file into weights + the shared kind/shape/finiteness checks
    loaders            load_model(kind, path) and load_generator/load_arcface/load_parser, convert_checkpoint
    seeded             seeded RANDOM weights in the official formats, for tests, demos and benchmarks

Importing this package is light (no torch): the installer modules (catalogue, find, download, install,
installer_cli) use the standard library only, and run before torch is installed.
"""
