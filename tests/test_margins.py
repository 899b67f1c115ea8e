import math

import numpy as np
import torch

from unlearnbench.margins import margins_from_logits


def test_margin_is_correct_logit_minus_logsumexp_of_the_others():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.5, 3.0, 0.0]])
    labels = torch.tensor([0, 2])
    expected = [2.0 - math.log(math.exp(1.0) + math.exp(-1.0)), 0.0 - math.log(math.exp(0.5) + math.exp(3.0))]
    np.testing.assert_allclose(margins_from_logits(logits, labels).numpy(), expected, rtol=1e-6)


def test_margin_is_the_logit_of_the_true_class_probability_not_minus_the_max():
    torch.manual_seed(0)
    logits = torch.randn(3, 50, 10)  # [models, points, classes]
    labels = torch.randint(0, 10, (50,))
    p = torch.softmax(logits, dim=-1).gather(-1, labels.view(1, -1, 1).expand(3, -1, 1)).squeeze(-1)
    np.testing.assert_allclose(margins_from_logits(logits, labels), torch.log(p / (1 - p)), rtol=1e-4, atol=1e-5)
    max_other = logits.scatter(-1, labels.view(1, -1, 1).expand(3, -1, 1), -1e9).max(-1).values
    assert not torch.allclose(margins_from_logits(logits, labels), logits.gather(
        -1, labels.view(1, -1, 1).expand(3, -1, 1)).squeeze(-1) - max_other)


def test_stack_margins_do_not_depend_on_the_chunk_size():
    from unlearnbench.margins import stack_margins
    from unlearnbench.stack import ModelStack

    torch.manual_seed(0)
    x, y = torch.randn(300, 1, 8, 8), torch.randint(0, 10, (300,))
    small = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    large = ModelStack.initialise("digits_cnn", 10, 1, range(200), range(200))
    # the automatic CPU chunk shrinks as the stack grows (activations of all models stay cache-sized)
    assert 1 <= large.eval_batch_size(x) < small.eval_batch_size(x) <= 512
    one_chunk = stack_margins(small, x, y, batch_size=len(x))
    np.testing.assert_allclose(stack_margins(small, x, y), one_chunk, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stack_margins(small, x, y, batch_size=7), one_chunk, rtol=1e-6, atol=1e-6)
    assert stack_margins(small, x, y, batch_size=7).shape == (2, 300)


def test_argmax_correctness_is_not_the_margin_proxy_on_ten_classes():
    from unlearnbench.margins import argmax_correct

    torch.manual_seed(1)
    labels = torch.randint(0, 10, (4000,))
    logits = torch.randn(3, 4000, 10)
    logits[:, torch.arange(4000), labels] += 1.6  # the true class usually wins, rarely with p > 1/2
    correct = argmax_correct(logits, labels)
    assert torch.equal(correct, logits.argmax(-1) == labels) and correct.dtype == torch.bool
    accuracy = correct.float().mean().item()
    proxy = (margins_from_logits(logits, labels) > 0).float().mean().item()
    assert accuracy - proxy > 0.2, (accuracy, proxy)


def test_compute_margins_stores_argmax_correctness_and_logs_argmax_accuracy(tmp_path, caplog):
    import logging

    from unlearnbench.stages.margins import compute_margins
    from unlearnbench.data import load_dataset, save_splits
    from unlearnbench.stack import ModelStack
    from unlearnbench.storage import load_arrays
    from unlearnbench.training import Recipe, train_stack

    splits = load_dataset("digits")
    save_splits(tmp_path / "splits.npz", splits)
    x, y = splits.inputs(), torch.from_numpy(splits.labels())
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [5, 6])
    train_stack(stack, x, y, np.arange(60), [1, 2], Recipe(epochs=2, batch_size=32, lr=0.05, peak_epoch=1))
    stack.save(tmp_path / "weights.safetensors")
    with caplog.at_level(logging.INFO, logger="unlearnbench"):
        compute_margins(str(tmp_path / "weights.safetensors"), str(tmp_path / "splits.npz"),
                        str(tmp_path / "margins.npz"), device="auto", keep_logits=False, tta="none")
    stored = load_arrays(tmp_path / "margins.npz")
    expected = (stack.logits(x).argmax(-1) == y).numpy()
    assert stored["correct"].dtype == bool
    np.testing.assert_array_equal(stored["correct"], expected)
    assert (stored["correct"] != (stored["margins"] > 0)).any()  # argmax, not the margin > 0 proxy
    n = splits.n_train
    line = f"argmax accuracy: train {expected[:, :n].mean():.4f}, val {expected[:, n:].mean():.4f}"
    assert any(line in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
