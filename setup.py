"""Packaging for unsupervised_landmarks, driven by settings.ini (nbdev 2 layout).

Written by hand: the nbdev template's `pkg_resources` import fails on current setuptools.
"""
from configparser import ConfigParser
from packaging.version import Version
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]
assert Version(cfg["version"]), "settings.ini: version is not a valid version"

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
lic = licenses[cfg["license"]]
requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()

setuptools.setup(
    name=cfg["lib_name"].replace("_", "-"),
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license=lic[0],
    classifiers=["Programming Language :: Python :: 3", "License :: " + lic[1]],
    url=cfg["git_url"],
    packages=setuptools.find_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"]),
    include_package_data=True,
    install_requires=requirements,
    extras_require={"dev": dev_requirements},
    python_requires=">=" + cfg["min_python"],
    zip_safe=False,
    entry_points={"nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
                  "console_scripts": ["ul-train=unsupervised_landmarks.pipeline:train_cli",
                                      "ul-sweep=unsupervised_landmarks.ablations:sweep_cli"]},
)
