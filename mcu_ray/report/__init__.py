def build_report(storage, sweep, out):
    return out
