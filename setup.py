from setuptools import find_packages, setup

setup(
    name="nao-ws",
    version="0.1.0",
    description="Neural Architecture Optimization (NAO) on an ENAS-style weight-sharing supernet",
    packages=find_packages(include=["nao_ws*", "supernet*", "controller*"]),
    package_data={"nao_ws.data": ["assets/*.npz", "assets/*.csv.gz", "assets/*.txt"]},
    python_requires=">=3.10",
    # torch/torchvision: CI and the README install the pinned builds first (torch==2.14.1, torchvision==0.29.1);
    # these ranges accept them without pulling a newer multi-GB release.
    install_requires=[
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16,<=0.29.1",
        "numpy",
        "scipy",
        "tensorboard",
        "click>=8",
        "tqdm",
        "matplotlib",
        "pyyaml",
    ],
    extras_require={
        "dev": ["pytest", "pytest-xdist", "hypothesis"],
        "ray": ["ray[default]"],
    },
    entry_points={"console_scripts": ["nao-ws=nao_ws.cli:main"]},
)
