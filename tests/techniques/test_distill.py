"""Knowledge distillation: the loss against a hand computation, the T^2 scaling, feature adapters,
the frozen teacher and `zoo distill` end to end."""

import math

import pytest
import torch

import zoo
from zoo.cli import main as zoo_main
from zoo.shared.errors import InvalidConfigError
from zoo.techniques.distill import Distiller, DistillationTask, kd_loss


def _softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_kd_loss_equals_a_hand_computation():
    student = [[1.0, -0.5, 2.0], [0.3, 0.2, -1.0]]
    teacher = [[3.0, 0.0, 1.0], [-1.0, 2.0, 0.5]]
    targets = [2, 1]
    T, alpha = 3.0, 0.7
    soft = hard = 0.0
    for s, t, y in zip(student, teacher, targets):
        p_t, p_s = _softmax(t, T), _softmax(s, T)
        soft += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))  # KL(teacher || student)
        hard += -math.log(_softmax(s, 1.0)[y])
    expected = alpha * T**2 * soft / 2 + (1 - alpha) * hard / 2
    got = kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(targets), temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_t_squared_keeps_the_soft_gradient_size_as_temperature_grows():
    # For a high T the soft term's gradient is (z - v) / (C T^2) per sample (the paper's eq. 3, zero-mean
    # logits); the T^2 factor makes it (z - v) / C, whatever T.
    z = torch.tensor([[1.0, -2.0, 0.5, 0.5]])
    v = torch.tensor([[0.0, 1.0, -1.5, 0.5]])
    for T in (50.0, 200.0):
        s = z.clone().requires_grad_()
        kd_loss(s, v, torch.tensor([0]), temperature=T, alpha=1.0).backward()
        torch.testing.assert_close(s.grad, (z - v) / 4, atol=2e-3, rtol=0.02)  # the limit holds to O(1/T)


def test_alpha_zero_is_plain_cross_entropy_and_bad_values_are_refused():
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 4, (5,))
    torch.testing.assert_close(kd_loss(s, t, y, 4.0, 0.0), torch.nn.functional.cross_entropy(s, y))
    with pytest.raises(InvalidConfigError, match="temperature"):
        kd_loss(s, t, y, 0.0, 0.5)
    with pytest.raises(InvalidConfigError, match="alpha"):
        kd_loss(s, t, y, 4.0, 1.5)


def _pair():
    torch.manual_seed(0)
    teacher = zoo.create("resnet18", base_channels=8, num_classes=5, in_chans=1)
    student = zoo.create("resnet18", base_channels=4, num_classes=5, in_chans=1)
    return student, teacher


def test_feature_distillation_adapts_channels_and_only_the_student_learns():
    student, teacher = _pair()
    x = torch.randn(6, 1, 32, 32)
    d = Distiller(student, teacher, [("layer2", "layer3"), ("layer4", "layer4")], example=x[:1])
    # layer2 of the student: 8 channels at 4x4; layer3 of the teacher: 32 channels at 2x2
    assert d.adapters[0].proj.weight.shape == (32, 8, 1, 1) and d.adapters[1].proj.weight.shape == (64, 32, 1, 1)
    d.train()
    assert student.training and not teacher.training  # the teacher's BatchNorm statistics stay as trained
    task = DistillationTask(temperature=2.0, alpha=0.5, beta=1.0)
    y = torch.randint(0, 5, (6,))
    loss = task.training_step(d, (x, y))
    s_logits, t_logits, pairs = d.distill_forward(x)
    assert pairs[0][0].shape == pairs[0][1].shape == (6, 32, 2, 2)
    features = sum(torch.nn.functional.mse_loss(a, b) for a, b in pairs)
    torch.testing.assert_close(loss, kd_loss(s_logits, t_logits, y, 2.0, 0.5) + features)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters()) and d.adapters[0].proj.weight.grad is not None
    torch.testing.assert_close(d(x), student(x))  # evaluation sees the student alone


def test_unknown_feature_layer_is_named():
    student, teacher = _pair()
    with pytest.raises(InvalidConfigError, match="no module 'layer9'"):
        Distiller(student, teacher, [("layer9", "layer2")], example=torch.randn(1, 1, 32, 32))


def test_zoo_distill_cli_trains_and_saves_the_student(tmp_path, capsys):
    torch.manual_seed(0)
    teacher = zoo.create("resnet18", base_channels=8, num_classes=10, in_chans=1)
    zoo.save_pretrained(teacher, tmp_path / "teacher")
    out = tmp_path / "student"
    argv = ["distill", "--teacher", str(tmp_path / "teacher"), "--student", "resnet18", "--student-width", "4",
            "--img-size", "16", "--max-steps", "2", "--batch-size", "16", "--feature-layers", "layer3:layer3",
            "--no-progress", "--save-model", str(out)]
    assert zoo_main(argv) == 0
    printed = capsys.readouterr().out
    assert "student test accuracy" in printed and "speed_ratio" in printed
    student = zoo.from_pretrained(out)
    assert student.num_classes == 10 and student.conv1.out_channels == 4
    assert not any(k.startswith(("teacher", "adapters")) for k in student.state_dict())


def test_teacher_for_other_classes_is_refused(tmp_path, capsys):
    zoo.save_pretrained(zoo.create("resnet18", base_channels=8, num_classes=3, in_chans=1), tmp_path / "t3")
    assert zoo_main(["distill", "--teacher", str(tmp_path / "t3"), "--student", "resnet18", "--max-steps", "1"]) != 0
    assert "3 classes" in capsys.readouterr().err
