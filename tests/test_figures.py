import pytest

from broadcaster.show.figures import claims, number_value
from broadcaster.show.products import fold


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("九十九", 99), ("一百二", 120), ("一千五", 1500), ("两万三", 23000), ("一百零二", 102),
        ("九点九", 9.9), ("十", 10), ("十二", 12), ("二十", 20), ("一三八", 138), ("三万五千", 35000),
        ("1,299.5", 1299.5), ("2.5万", 25000), ("0.25", 0.25), ("两", 2),
    ],
)  # fmt: skip
def test_numbers_are_read_as_they_are_written(token: str, value: float) -> None:
    assert number_value(token) == pytest.approx(value)


@pytest.mark.parametrize(
    ("sentence", "kind", "value", "bound"),
    [
        ("只要九十九块九毛九", "price", 99.99, "exact"),
        ("99块9包邮", "price", 99.9, "exact"),
        ("￥1,299.00", "price", 1299, "exact"),
        ("it is $19.99", "price", 19.99, "exact"),
        ("20 dollars", "price", 20, "exact"),
        ("到手价128", "price", 128, "exact"),
        ("一百块左右", "price", 100, "about"),
        ("不到一百块", "price", 100, "under"),
        ("打八折", "discount", 0.8, "exact"),
        ("八五折", "discount", 0.85, "exact"),
        ("8.5折", "discount", 0.85, "exact"),
        ("20% off today", "discount", 0.8, "exact"),
        ("立减30", "discount", 30, "exact"),
        ("save $5 today", "discount", 5, "exact"),
        ("半价", "discount", 0.5, "exact"),
        ("仅剩3件", "stock", 3, "exact"),
        ("库存200", "stock", 200, "exact"),
        ("only 3 left", "stock", 3, "exact"),
        ("200 units in stock", "stock", 200, "exact"),
        ("重0.25千克", "spec", 250, "exact"),
        ("一斤装", "spec", 500, "exact"),
        ("10000mAh", "spec", 10000, "exact"),
        ("两万毫安", "spec", 20000, "exact"),
        ("1.5 m cable", "spec", 150, "exact"),
    ],
)
def test_claims_are_found_with_their_kind_value_and_bound(
    sentence: str, kind: str, value: float, bound: str
) -> None:
    found = claims(fold(sentence))
    assert [(c.kind, c.bound) for c in found] == [(kind, bound)]
    assert found[0].value == pytest.approx(value)
