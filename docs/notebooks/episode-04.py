# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Episode 04: Compile and train (fit) a convolutional neural network, in PyTorch
#
# Episode 04 of [Introduction to image classification with CNNs](https://carpentries-incubator.github.io/intro-image-classification-cnn/)
# trains episode 03's `model_intro` for ten epochs, plots how its loss and accuracy changed,
# and reads overfitting from the plots. This notebook does the same with
# [cnn-torch](../../README.md), whose `fit` is Keras's `model.fit` written out as one
# PyTorch loop ([`cnn_torch/training.py`](../../cnn_torch/training.py)). It then trains the
# lesson's 2024 answer to overfitting, a model with a dropout layer, and saves both models
# for episodes 05 and 06. Every `# Keras:` comment is the lesson's line that the PyTorch
# line below it replaces.

# %%
# Settings: the only cell to change, then run all cells.
DATASET = "shapes"  # "shapes": built in, offline | "cifar10": downloads CIFAR-10 | "cifar10-5": the
#                     lesson's five CIFAR-10 classes | "folder": your images, DATA_DIR/train/<class>/
DATA_DIR = None  # holds train/<class>/ (e.g. from cnn-torch lesson-data) or cifar-10-batches-py/ (None: data/)
LIMIT = 1250  # training images before 20% are held out to validate (None: all); shapes: 1,000 / 250, and 250 to test
EPOCHS = 10  # the lesson trains for 10 epochs
SEED = 1  # the same seed repeats every number below

# %%
# Keras: import tensorflow as tf # neural network
import torch  # neural network
# Keras: import matplotlib.pyplot as plt # plotting
import matplotlib.pyplot as plt  # plotting
# Keras: import icwcnn_functions as icfn # pre-defined helpers
from cnn_torch import workshop as icfn  # pre-defined helpers
# Keras: import seaborn as sns # specialised plotting
import seaborn as sns  # specialised plotting
# Keras: import pandas as pd # handles dataframes
import pandas as pd  # handles dataframes

from cnn_torch import fit, models
from cnn_torch.checkpoints import save_model
from cnn_torch.plots import LivePlot

torch.manual_seed(SEED);

# %% [markdown]
# ## The data and the model (episodes 01-03)

# %%
# Keras: class_names = ['airplane', 'bird', 'cat', 'dog', 'truck']
# Keras: train_ds, val_ds, test_ds = icfn.prepare_datasets()
train_ds, val_ds, test_ds = icfn.prepare_datasets(DATASET, DATA_DIR, limit=LIMIT, seed=SEED)
class_names = train_ds.class_names
# Keras: model_intro = icfn.create_model_intro()
model_intro = models.model_intro(num_classes=len(class_names))
print(f"{len(train_ds)} training and {len(val_ds)} validation images of {len(class_names)} classes")

# %% [markdown]
# ## Step 5. Choose a loss function, an optimizer and a metric
#
# Keras's `compile` writes down three choices; in PyTorch they are handed to the loop.
#
# * The **optimizer** decides how the weights change after each batch, from the gradient of
#   the loss. Adam keeps running averages of each weight's past gradients and scales each
#   weight's step by them, so it usually makes good progress with its default settings.
# * Its **learning rate** is the size of those steps: too small and training crawls, too
#   large and the loss jumps about or blows up. Keras's default for Adam is 0.001;
#   `fit(..., "adam")` builds Keras's Adam with Keras's defaults.
# * The **loss** says how wrong a prediction is; training makes it smaller. Sparse
#   categorical cross-entropy compares the predicted probabilities with a class number.
#   `torch.nn.CrossEntropyLoss` is that loss, taking the model's raw scores (it applies the
#   softmax itself, which the lesson's model does in its last layer).
# * The **metric**, accuracy, is the fraction of images whose most probable class is the
#   right one. It is only watched, never trained on. `fit` always reports it.

# %%
# Keras: model_intro.compile(optimizer = 'adam',
#                            loss = 'sparse_categorical_crossentropy',
#                            metrics = ['accuracy'])
optimizer = "adam"
loss_fn = torch.nn.CrossEntropyLoss()

# %% [markdown]
# ## Step 6. Train (fit) the model
#
# One **epoch** is one pass over all training images, in a new random order, in batches of
# 32; each batch is one step of the optimizer. After every epoch, `fit` measures the model
# on the validation images, which it never trains on, and prints one line: `loss` and
# `accuracy` over the epoch's training batches, `val_loss` and `val_accuracy` on the
# validation images. It returns a History, as Keras does.

# %%
# Keras: history_intro = model_intro.fit(x = train_ds,
#                                        epochs = 10,
#                                        validation_data = val_ds
#        )
history_intro = fit(model_intro, loss_fn, optimizer, train_ds.images, train_ds.labels, epochs=EPOCHS,
                    validation_data=(val_ds.images, val_ds.labels), seed=SEED)

# %% [markdown]
# ## Watching the training: the two plots
#
# `history_intro.history` has Keras's keys, so the lesson's pandas and seaborn lines work
# unchanged: loss on the left, accuracy on the right, the training curve solid and the
# validation curve dashed.

# %%
# Keras: history_intro_df = pd.DataFrame.from_dict(history_intro.history)
history_intro_df = pd.DataFrame.from_dict(history_intro.history)
history_intro_df.index += 1  # number the epochs from 1, as fit printed them (Keras's frame counts from 0)

# Keras: fig, axes = plt.subplots(1, 2)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
# Keras: fig.suptitle('cifar_model_intro')
fig.suptitle('cifar_model_intro')
# Keras: sns.lineplot(ax=axes[0], data=history_intro_df[['loss', 'val_loss']])
sns.lineplot(ax=axes[0], data=history_intro_df[['loss', 'val_loss']])
# Keras: sns.lineplot(ax=axes[1], data=history_intro_df[['accuracy', 'val_accuracy']])
sns.lineplot(ax=axes[1], data=history_intro_df[['accuracy', 'val_accuracy']]);

# %% [markdown]
# Read the plots:
#
# * The training loss falls and the training accuracy rises, epoch after epoch.
# * The validation curves follow at first, then flatten out below the training accuracy:
#   the model gets better at the images it trains on than at new ones.
# * That gap is **overfitting**: the model has begun to learn its training images by heart,
#   details that do not hold for other images. Signs: the training loss keeps falling while
#   the validation loss stops falling or rises; the training accuracy pulls away from the
#   validation accuracy.
#
# Cures: more training images, a smaller model, or a way to make the model rely on no single
# detail. The lesson's 2024 version tried one of the last kind, dropout.
#
# ## A model with dropout
#
# A **dropout** layer sets a random half (its `rate`) of its inputs to zero at every training
# step, a new half each time, and does nothing when the model is evaluated or predicts. No
# part of the network can count on another being there, so it has to learn patterns that
# hold up. `models.model_dropout` is the lesson's 2024 `create_model_dropout()`: three
# convolutions (16, 32 and 64 filters), dropout, and the dense output layer.

# %%
# Keras: model_dropout = create_model_dropout()
model_dropout = models.model_dropout(num_classes=len(class_names))
models.summary(model_dropout)

# %% [markdown]
# The 2024 version compiles it with `CategoricalCrossentropy()` and
# `CategoricalAccuracy()`, because its labels were one-hot rows (episode 02). The loss and
# the accuracy are the same numbers for class numbers, which is what the data holds here.

# %%
# Keras: model_dropout.compile(optimizer = keras.optimizers.Adam(),
#                              loss = keras.losses.CategoricalCrossentropy(),
#                              metrics = keras.metrics.CategoricalAccuracy())
# Keras: history_dropout = model_dropout.fit(x = train_images, y = train_labels,
#                                            batch_size = 32,
#                                            epochs = 10,
#                                            validation_data = (val_images, val_labels))
# (not in the lesson) on_epoch_end=LivePlot(...) redraws the two plots under this cell after
# every epoch, so you watch the curves move while it trains; outside Jupyter it draws nothing.
history_dropout = fit(model_dropout, loss_fn, "adam", train_ds.images, train_ds.labels, batch_size=32, epochs=EPOCHS,
                      validation_data=(val_ds.images, val_ds.labels), seed=SEED,
                      on_epoch_end=LivePlot("model_dropout"))

# %%
# Keras: history_dropout_df = pd.DataFrame.from_dict(history_dropout.history)
history_dropout_df = pd.DataFrame.from_dict(history_dropout.history)
history_dropout_df.index += 1
# Keras: fig, axes = plt.subplots(1, 2)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
# Keras: fig.suptitle('cifar_model_dropout')
fig.suptitle('cifar_model_dropout')
# Keras: sns.lineplot(ax=axes[0], data=history_dropout_df[['loss', 'val_loss']])
sns.lineplot(ax=axes[0], data=history_dropout_df[['loss', 'val_loss']])
# Keras: sns.lineplot(ax=axes[1], data=history_dropout_df[['categorical_accuracy', 'val_categorical_accuracy']])
sns.lineplot(ax=axes[1], data=history_dropout_df[['accuracy', 'val_accuracy']]);

# %% [markdown]
# Compare the two models after their last epoch: the gap between training and validation
# accuracy, and the validation accuracy itself.

# %%
last_epochs = pd.DataFrame({"model_intro": history_intro_df.iloc[-1], "model_dropout": history_dropout_df.iloc[-1]})
last_epochs.loc["accuracy - val_accuracy"] = last_epochs.loc["accuracy"] - last_epochs.loc["val_accuracy"]
last_epochs.round(3)

# %% [markdown]
# ## Save both models
#
# Episode 05 evaluates them on the test images and episode 06 shares the better one. As in
# episode 01, the folder is created when needed.

# %%
# Keras: model_intro.save('models/model_intro.keras')
save_model(model_intro, "models/model_intro.pt", class_names, history_intro)
# Keras: model_dropout.save('models/model_dropout.keras')
save_model(model_dropout, "models/model_dropout.pt", class_names, history_dropout);
