"""The build backend's metadata and sdist steps (arguments: the metadata folder,
the sdist folder); prints ``RESULT dist-info-name sdist-name``.

Run by test_packaging.py::test_license_ships_in_the_wheel_metadata_and_the_sdist."""

import sys

from scikit_build_core.build import build_sdist, prepare_metadata_for_build_wheel

names = prepare_metadata_for_build_wheel(sys.argv[1]), build_sdist(sys.argv[2])
print("RESULT", *names)  # the backend prints its own lines too
