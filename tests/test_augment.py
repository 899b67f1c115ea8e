"""Data augmentation (flip, translate, cutout) as the published FFCV pipeline, and flip test-time
augmentation of eval-mode logits."""

import numpy as np
import pytest
import torch

from unlearnbench.augment import Augment
from unlearnbench.stack import ModelStack


def images(m=2, b=3, c=2, h=6, w=7):
    return torch.arange(m * b * c * h * w, dtype=torch.float32).view(m, b, c, h, w) + 1  # no zeros


def params(flip=0, ty=0, tx=0, cy=0, cx=0, m=2, b=3):
    p = torch.zeros(m, b, 5, dtype=torch.int64)
    p[..., 0], p[..., 1], p[..., 2], p[..., 3], p[..., 4] = flip, ty, tx, cy, cx
    return p


def ffcv_translate(image, pad, y, x):
    """FFCV RandomTranslate: pad with the fill (0 here), crop at (y, x) in [0, 2 pad]."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=image.dtype)
    padded[:, pad:pad + h, pad:pad + w] = image
    return padded[:, y:y + h, x:x + w]


def test_flip_mirrors_exactly_the_flagged_images():
    x = images()
    p = params()
    p[0, 1, 0] = 1
    out = Augment(flip=True).apply(x, p)
    assert torch.equal(out[0, 1], x[0, 1].flip(-1))
    keep = torch.ones(2, 3, dtype=torch.bool)
    keep[0, 1] = False
    assert torch.equal(out[keep], x[keep])


@pytest.mark.parametrize("y, x", [(0, 0), (2, 2), (4, 4), (0, 3), (4, 1)])
def test_translate_is_ffcvs_pad_and_crop(y, x):
    imgs = images()
    out = Augment(translate=2).apply(imgs, params(ty=y, tx=x))
    for m in range(2):
        for b in range(3):
            np.testing.assert_array_equal(out[m, b].numpy(), ffcv_translate(imgs[m, b].numpy(), 2, y, x))


def test_cutout_zeroes_one_square_inside_the_image():
    x = images()
    out = Augment(cutout=3).apply(x, params(cy=1, cx=4))
    zeroed = out == 0
    assert zeroed[..., 1:4, 4:7].all() and zeroed.sum() == 2 * 3 * 2 * 9


def test_draws_follow_ffcvs_ranges_and_the_models_own_stream():
    aug = Augment(flip=True, translate=2, cutout=4)
    p = aug.draw(aug.generator(7), 20_000, (32, 32))
    assert set(np.unique(p[:, 0])) == {0, 1} and abs(p[:, 0].mean() - 0.5) < 0.02
    assert set(np.unique(p[:, 1:3])) == set(range(5))  # offsets 0..2t: shifts of up to t each way
    assert p[:, 3:].min() == 0 and p[:, 3:].max() == 32 - 4 - 1  # randint(h - s): inside the image
    first = aug.draw(aug.generator(7), 50, (32, 32))
    np.testing.assert_array_equal(aug.draw(aug.generator(7), 50, (32, 32)), first)  # seeded
    assert not np.array_equal(aug.draw(aug.generator(8), 50, (32, 32)), first)
    # the augmentation stream is not the data-order stream of the same seed
    assert not np.array_equal(np.random.default_rng(7).random(50) < 0.5, first[:, 0].astype(bool))


def test_a_cutout_larger_than_the_image_is_refused():
    with pytest.raises(ValueError, match="cutout"):
        Augment(cutout=8).draw(np.random.default_rng(0), 4, (8, 8))


def test_only_configured_augmentations_are_active():
    assert not Augment().active and not Augment.from_config({"flip": False, "translate": 0, "cutout": 0}).active
    assert Augment.from_config({"cutout": 4}).active


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror():
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    x = torch.randn(9, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = stack.logits(x)
    stack.tta = "flip"
    tta = stack.logits(x)
    with torch.no_grad():
        expected = (stack.forward(x, train=False) + stack.forward(x.flip(-1), train=False)) / 2
    torch.testing.assert_close(tta, expected)
    assert not torch.allclose(tta, plain)
    torch.testing.assert_close(stack.logits(x.flip(-1)), tta)  # mirror-invariant by construction
    assert stack.select([1]).tta == "flip"  # slices (the loop's parts) keep it
