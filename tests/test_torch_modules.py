"""stage_weights(nn.Module), load_into and state_dict: tied parameters, optimizer state,
strict loading, and bad modules refused with the key named."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from coralx.errors import IncompatibleWeights, InvalidValue  # noqa: E402


class Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.norm = torch.nn.BatchNorm1d(8)
        self.lm_head = torch.nn.Linear(8, 50, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        return self.lm_head(self.norm(self.embed(ids)))


def _trained(steps: int = 3) -> tuple[Tied, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    for _ in range(steps):
        ids = torch.randint(0, 50, (16,))
        loss = torch.nn.functional.cross_entropy(model(ids), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _chunk_files(repo) -> int:
    return sum(1 for p in (repo.path / "chunks").rglob("*") if p.is_file())


def test_tied_parameters_are_stored_once_and_come_back_tied(repo):
    model, _ = _trained()
    names = repo.stage_weights(model)
    assert set(names) == set(model.state_dict())
    commit = repo.commit("tied")
    manifest = repo.weights.manifest(commit.commit_hash)
    assert manifest.torch["aliases"] == {"lm_head.weight": "embed.weight"}
    assert manifest.tensors["lm_head.weight"] == manifest.tensors["embed.weight"]
    state, opt_state = repo.state_dict(commit.commit_hash)
    assert opt_state is None
    assert state["lm_head.weight"] is state["embed.weight"]
    # every reader still sees both names
    assert torch.equal(repo.get_weight("lm_head.weight", framework="torch"), model.embed.weight)

    fresh = Tied()
    result = repo.load_into(fresh, commit.commit_hash)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    assert fresh.lm_head.weight is fresh.embed.weight
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_an_alias_restaged_with_other_values_is_no_longer_tied(repo):
    model, _ = _trained(1)
    repo.stage_weights(model)
    repo.stage_weights({"lm_head.weight": torch.zeros(50, 8)})
    commit = repo.commit("untied")
    assert "aliases" not in repo.weights.manifest(commit.commit_hash).torch
    state, _ = repo.state_dict(commit.commit_hash)
    assert not torch.equal(state["lm_head.weight"], state["embed.weight"])


def test_optimizer_state_round_trips_without_pickle(repo):
    model, opt = _trained()
    repo.stage_weights(model, optimizer=opt)
    commit = repo.commit("with optimizer")
    layout = repo.weights.manifest(commit.commit_hash).torch["optimizer"]
    assert layout["class"] == "torch.optim.adamw.AdamW"
    assert layout["state_dict"]["param_groups"][0]["betas"] == [0.8, 0.9]
    stored = repo.get_all_weights(commit.commit_hash)
    assert "optimizer/state/0/exp_avg" in stored

    model2 = Tied()
    opt2 = torch.optim.AdamW(model2.parameters(), lr=99.0)
    repo.load_into(model2, commit.commit_hash, optimizer=opt2)
    assert opt2.param_groups[0]["lr"] == 1e-2
    for pid, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(opt2.state_dict()["state"][pid][key], value), (pid, key)
    # training continues exactly as it would have
    ids = torch.randint(0, 50, (16,), generator=torch.Generator().manual_seed(5))
    for m, o in ((model, opt), (model2, opt2)):
        loss = torch.nn.functional.cross_entropy(m(ids), ids)
        o.zero_grad()
        loss.backward()
        o.step()
    for key, value in model.state_dict().items():
        assert torch.equal(model2.state_dict()[key], value), key


def test_load_into_reports_keys_as_load_state_dict(repo):
    repo.stage_weights(torch.nn.Linear(3, 2))
    commit = repo.commit("linear").commit_hash
    other = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(IncompatibleWeights) as info:
        repo.load_into(other, commit)
    assert info.value.missing_keys == ["0.bias", "0.weight"]
    assert info.value.unexpected_keys == ["bias", "weight"]
    assert "Missing key(s) in state_dict: '0.bias', '0.weight'" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    loose = repo.load_into(other, commit, strict=False)
    assert sorted(loose.missing_keys) == ["0.bias", "0.weight"]
    with pytest.raises(IncompatibleWeights, match="size mismatch"):
        repo.load_into(torch.nn.Linear(3, 5), commit)
    target = torch.nn.Linear(3, 2)
    repo.load_into(target, commit, map_location="cpu")
    assert torch.equal(target.weight, repo.get_weight("weight", commit, framework="torch"))
    with pytest.raises(InvalidValue, match="no optimizer state"):
        repo.load_into(target, commit, optimizer=torch.optim.SGD(target.parameters(), lr=1))


class WithExtraState(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def get_extra_state(self):
        return {"vocab": ["a", "b"]}

    def set_extra_state(self, state):
        pass


def test_bad_modules_are_refused_naming_the_key_and_nothing_is_stored(repo):
    before = _chunk_files(repo)
    with pytest.raises(InvalidValue, match=r"'_extra_state' is a dict, not a tensor"):
        repo.stage_weights(WithExtraState())
    with torch.device("meta"):
        meta = torch.nn.Linear(4, 4)
    with pytest.raises(InvalidValue, match=r"'weight' is on the meta device"):
        repo.stage_weights(meta)
    clash = torch.nn.Module()
    clash.register_buffer("optimizer/x", torch.ones(2))
    with pytest.raises(InvalidValue, match="'optimizer/x' starts with 'optimizer/'"):
        repo.stage_weights(clash)
    lin = torch.nn.Linear(2, 2)
    flat_clash = {"state": {0: {"a/b": torch.ones(1), "a": {"b": torch.zeros(1)}}}}
    with pytest.raises(InvalidValue, match="'state/0/a/b' names the same tensor twice"):
        repo.stage_weights(lin, optimizer=flat_clash)
    with pytest.raises(
        InvalidValue,
        match=r"'state/0/fn' is a \w+, neither a tensor nor JSON",
    ):
        repo.stage_weights(lin, optimizer={"state": {0: {"fn": print}}})
    assert _chunk_files(repo) == before and repo.weights.staged == {}


def test_plain_mappings_are_staged_as_before(repo):
    shared = torch.ones(3)
    repo.stage_weights({"a": shared, "b": shared})
    commit = repo.commit("plain")
    manifest = repo.weights.manifest(commit.commit_hash)
    assert manifest.torch == {} and b'"torch"' not in manifest.to_json()
