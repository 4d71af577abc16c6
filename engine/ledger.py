"""The ledger: balances, holds, fees and transfers.

Every move of money goes through here, and each keeps two things true that the
boundary assertions check: available and held never go negative, and a fill
moves exactly what it takes from one account into another or the fee account
(an asset is created only by a deposit and destroyed only by a withdrawal).
A touched balance is reported once per command, as it ends (`flush`).
"""

from __future__ import annotations

from engine.codes import RejectCode
from engine.commands import AddAsset, Deposit, Withdraw
from engine.events import AssetAdded, BalanceChanged, Transferred
from engine.exchange_state import FEE_ACCOUNT, ExchangeState
from engine.part import Emit, Part
from engine.retries import Retries
from engine.state import Balance, Instrument, Order, buy_cost

BUY = 0
BALANCE_MAX = 2**62
ASSET_DECIMALS_MAX = 18


class Ledger(Part):
    def __init__(self, state: ExchangeState, emit: Emit, retries: Retries) -> None:
        super().__init__(state, emit)
        self.retries = retries
        self.fees = state.accounts[FEE_ACCOUNT]
        # Balances changed by the command being applied, each once, in the order touched.
        self.touched: list[Balance] = []

    def touch(self, bal: Balance) -> None:
        if not bal.dirty:
            bal.dirty = True
            self.touched.append(bal)

    def flush(self) -> None:
        """One BalanceChanged per balance the command touched."""
        emit = self.emit
        for bal in self.touched:
            bal.dirty = False
            emit(BalanceChanged, bal.account, bal.asset, bal.available, bal.held)
        self.touched = []

    # ------------------------------------------------------------- holds

    def hold(self, order: Order, bal: Balance, amount: int) -> None:
        """Moves what an accepted order can cost from available to held."""
        bal.available -= amount
        bal.held += amount
        order.held = amount
        assert bal.available >= 0, (bal.account, bal.asset, bal.available)
        if not bal.dirty:
            bal.dirty = True
            self.touched.append(bal)

    def release(self, order: Order, inst: Instrument, qty: int) -> None:
        """Takes `qty` off an order's quantity and gives back the hold it no longer needs."""
        order.leaves -= qty
        order.qty -= qty
        self.rehold(order, inst)

    def rehold(self, order: Order, inst: Instrument) -> None:
        """Sets an order's hold to what its leaves at its price can cost."""
        if order.side == BUY:
            bal = order.owner.balances[inst.quote]
            new_held = buy_cost(order.leaves, order.price, order.hold_fee_bps)
        else:
            bal = order.owner.balances[inst.base]
            new_held = order.leaves
        released = order.held - new_held
        order.held = new_held
        bal.held -= released
        bal.available += released
        assert bal.available >= 0 and bal.held >= 0, (bal.account, bal.asset)
        self.touch(bal)

    def settle(
        self, inst: Instrument, buyer: Order, seller: Order, qty: int, price: int,
        buyer_fee: int, seller_fee: int,
    ) -> None:  # fmt: skip
        """One fill: the buyer's hold pays notional and fee, any change goes back to
        available; the seller's shares leave its hold for proceeds less fee; the fees go
        to the fee account. Conserves both assets by construction."""
        notional = price * qty
        touched = self.touched
        quote = inst.quote
        base = inst.base
        bal = buyer.owner.balances[quote]
        new_held = buy_cost(buyer.leaves, buyer.price, buyer.hold_fee_bps)
        released = buyer.held - new_held
        buyer.held = new_held
        bal.held -= released
        bal.available += released - notional - buyer_fee
        assert bal.available >= 0 and bal.held >= 0, (bal.account, quote)
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        bal = buyer.owner.balance(base)
        bal.available += qty
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        bal = seller.owner.balances[base]
        bal.held -= qty
        seller.held -= qty
        assert bal.held >= 0, (bal.account, base)
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        bal = seller.owner.balance(quote)
        bal.available += notional - seller_fee
        if not bal.dirty:
            bal.dirty = True
            touched.append(bal)
        fees = buyer_fee + seller_fee
        if fees:
            bal = self.fees.balance(quote)
            bal.available += fees
            if not bal.dirty:
                bal.dirty = True
                touched.append(bal)

    # ------------------------------------------------------------- assets and transfers

    def add_asset(self, cmd: AddAsset) -> None:
        name = "AddAsset"
        assets = self.state.assets
        if not cmd.asset or not 0 <= cmd.decimals <= ASSET_DECIMALS_MAX:
            self.reject(
                "", "", name, RejectCode.INVALID_ASSET, f"decimals must be 0..{ASSET_DECIMALS_MAX}"
            )
        elif cmd.asset in assets:
            self.reject("", "", name, RejectCode.ALREADY_EXISTS, f"{cmd.asset} is defined")
        else:
            assets[cmd.asset] = cmd.decimals
            self.emit(AssetAdded, cmd.asset, cmd.decimals)

    def deposit(self, cmd: Deposit) -> None:
        self._transfer(cmd, 1)

    def withdraw(self, cmd: Withdraw) -> None:
        self._transfer(cmd, -1)

    def _transfer(self, cmd: Deposit | Withdraw, sign: int) -> None:
        name = type(cmd).__name__
        key = (cmd.account, cmd.request_id)
        if cmd.request_id and self.retries.answered_before(key, cmd, name):
            return
        problem = self._transfer_problem(cmd, sign)
        if problem is not None:
            event = self.reject(cmd.account, cmd.request_id, name, *problem)
            self.retries.remember(cmd.account, cmd.request_id, cmd, event)
            return
        bal = self.state.accounts[cmd.account].balance(cmd.asset)
        bal.available += sign * cmd.amount
        assert bal.available >= 0
        if bal.dirty:  # touched by an expiry in this command: report it once, here
            bal.dirty = False
            self.touched.remove(bal)
        self.emit(Transferred, cmd.account, cmd.asset, sign * cmd.amount, cmd.request_id)
        event = self.emit(BalanceChanged, bal.account, bal.asset, bal.available, bal.held)
        self.retries.remember(cmd.account, cmd.request_id, cmd, event)

    def _transfer_problem(self, cmd: Deposit | Withdraw, sign: int) -> tuple[str, str] | None:
        account = self.state.accounts.get(cmd.account)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT, "unknown account"
        if not any(cmd.asset in (i.base, i.quote) for i in self.state.instruments.values()):
            return RejectCode.UNKNOWN_ASSET, f"no instrument trades {cmd.asset!r}"
        if not 0 < cmd.amount < BALANCE_MAX:
            return RejectCode.INVALID_AMOUNT, "amount must be positive"
        existing = account.balances.get(cmd.asset)
        available = existing.available if existing is not None else 0
        if sign > 0 and available + cmd.amount >= BALANCE_MAX:
            return RejectCode.INVALID_AMOUNT, "balance would exceed its limit"
        if sign < 0 and available < cmd.amount:
            return RejectCode.INSUFFICIENT_FUNDS, "withdrawal exceeds available balance"
        return None
