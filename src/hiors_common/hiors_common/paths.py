"""Find a package's share files (config YAML, launch, assets) in both install layouts:
a colcon install (ament index) and the pip-only editable install of the source tree."""
import importlib
import os


def package_share(package: str) -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        share = get_package_share_directory(package)
        if os.path.isdir(os.path.join(share, 'config')):
            return share
    except Exception:  # noqa: BLE001 - not in the ament index: fall back to the source tree
        pass
    module = importlib.import_module(package)
    return os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))


def package_file(package: str, *parts: str) -> str:
    path = os.path.join(package_share(package), *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f'{package}: no file {os.path.join(*parts)} (looked in {path})')
    return path
