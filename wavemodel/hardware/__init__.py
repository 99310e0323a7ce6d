"""The only part of wavemodel that touches a GPU: device query, timing harness, kernel launchers.

Nothing here is imported by the model; every module imports CuPy / PyTorch inside functions, so the
package imports cleanly on a machine without them.
"""
