"""What every stage uses: typed params, paths, all-or-nothing outputs, errors, the stage CLI, run curves."""
