"""Where the lesson's images come from: CIFAR-10 (torchvision), folders of image files as
``image_dataset_from_directory`` reads them, and the built-in offline ``shapes`` set.

``cnn_torch.data.load_data`` picks one; a learner reads ``data.py``, not these.
"""
